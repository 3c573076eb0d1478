<?php
// A hand-written save handler, as PHP tutorial apps behind a reverse proxy write one: the session's
// value (PHP's `php` serialisation) at `session:{id}` by SETEX, with phpredis.
//   php handler.php REDIS_PORT SESSION_ID CODE   runs CODE in the started session, which is saved
[, $port, $id, $code] = $argv;

class RedisHandler implements SessionHandlerInterface
{
    public function __construct(private Redis $redis) {}
    public function open($path, $name): bool { return true; }
    public function close(): bool { return true; }
    public function read($id): string|false { return $this->redis->get("session:$id") ?: ''; }
    public function write($id, $data): bool { return $this->redis->setex("session:$id", 1440, $data); }
    public function destroy($id): bool { $this->redis->del("session:$id"); return true; }
    public function gc($max): int|false { return 0; }
}

$redis = new Redis();
$redis->connect('127.0.0.1', (int) $port);
session_set_save_handler(new RedisHandler($redis), true);
session_id($id);
session_start();
eval($code);
