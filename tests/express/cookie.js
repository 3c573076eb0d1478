// express-session's own cookie signer (its cookie-signature), for src/store/format/express.rs:
//   node cookie.js sign SECRET ID        prints the signed value express-session sets
//   node cookie.js unsign SECRET VALUE   prints the id express-session reads, or "false"
const signature = require(require.resolve('cookie-signature', {
  paths: [require.resolve('express-session')],
}));
const [mode, secret, value] = process.argv.slice(2);
if (mode === 'sign') {
  process.stdout.write('s:' + signature.sign(value, secret));
} else {
  const signed = value.startsWith('s:') && signature.unsign(value.slice(2), secret);
  process.stdout.write(String(signed));
}
