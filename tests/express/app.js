// An Express app with express-session and connect-redis, as their READMEs set them up, sharing
// sessions with the demo in the express format: `ADDR` (host:port), `REDIS_URL`, `SESSION_SECRET`.
//   GET /show   the session as JSON (`{}` when there is none)
//   GET /set    stores `fromExpress` in the session
//   GET /login?user=NAME   signs NAME in, under a new session id, as express-session's README does
const express = require('express');
const session = require('express-session');
const { RedisStore } = require('connect-redis');
const { createClient } = require('redis');

(async () => {
  const client = createClient({ url: process.env.REDIS_URL });
  await client.connect();
  const app = express();
  app.use(session({
    store: new RedisStore({ client }),
    secret: process.env.SESSION_SECRET.split(','),
    resave: false,
    saveUninitialized: false,
  }));
  app.get('/show', (req, res) => res.json(req.session));
  app.get('/login', (req, res, next) => {
    req.session.regenerate((err) => {
      if (err) return next(err);
      req.session.user = req.query.user;
      res.send('ok');
    });
  });
  app.get('/set', (req, res) => {
    req.session.fromExpress = { n: [1, 2] };
    res.send('ok');
  });
  const [host, port] = process.env.ADDR.split(':');
  app.listen(Number(port), host);
})();
