<?php
// Laravel 9-13's session and cookie bytes restated with PHP's own serialize(), json_encode(),
// openssl_encrypt() and hash_hmac() (INTEROP.md §1), for the deltas Laravel 8.83 cannot show:
// no `:` after the cache prefix (11+), previous keys (11+), hyphenated names (12.1+ skeletons),
// `session.serialization=json` (9+). tests/laravel.rs drives it against a real redis-server.
//   php laravel_next.php write PORT KEY_PREFIX COOKIE APP_KEY CIPHER SERIALIZATION ATTRIBUTES_JSON
//     stores a new session as Laravel does and prints its cookie's value, as Symfony sends it
//   php laravel_next.php read PORT KEY_PREFIX COOKIE APP_KEYS CIPHER SERIALIZATION COOKIE_VALUE
//     prints the attributes of the session the cookie names as JSON, trying each key of the
//     comma-separated APP_KEYS as Laravel 11+ does, or `(null)` for a cookie that does not verify
[, $mode, $port, $prefix, $cookie, $keys, $cipher, $serialization, $arg] = $argv;
$keys = array_map(fn ($k) => base64_decode(substr($k, 7)), explode(',', $keys));
$cipher = strtolower($cipher);
$redis = new Redis();
$redis->connect('127.0.0.1', (int) $port);

// CookieValuePrefix::create: the HMAC-SHA1 of the cookie's name and `v2`, under the raw key.
$namePrefix = fn ($key) => hash_hmac('sha1', $cookie.'v2', $key).'|';

if ($mode === 'write') {
    $key = $keys[0];
    // Str::random(40).
    $id = '';
    while (strlen($id) < 40) {
        $id .= substr(str_replace(['/', '+', '='], '', base64_encode(random_bytes(40))), 0, 40 - strlen($id));
    }
    $attributes = json_decode($arg, true);
    $inner = $serialization === 'json' ? json_encode($attributes) : serialize($attributes);
    $redis->setex($prefix.$id, 7200, serialize($inner));
    // Encrypter::encrypt($value, false).
    $iv = random_bytes(openssl_cipher_iv_length($cipher));
    $tag = '';
    $value = openssl_encrypt($namePrefix($key).$id, $cipher, $key, 0, $iv, $tag);
    $iv = base64_encode($iv);
    $gcm = str_ends_with($cipher, 'gcm');
    $mac = $gcm ? '' : hash_hmac('sha256', $iv.$value, $key);
    $tag = $gcm ? base64_encode($tag) : '';
    echo rawurlencode(base64_encode(json_encode(compact('iv', 'value', 'mac', 'tag'), JSON_UNESCAPED_SLASHES)));
} else {
    $payload = json_decode(base64_decode(rawurldecode($arg)), true);
    foreach ($keys as $key) {
        $gcm = str_ends_with($cipher, 'gcm');
        if (! $gcm && ! hash_equals(hash_hmac('sha256', $payload['iv'].$payload['value'], $key), $payload['mac'])) {
            continue;
        }
        $plain = openssl_decrypt($payload['value'], $cipher, $key, 0, base64_decode($payload['iv']),
            $gcm ? base64_decode($payload['tag']) : '');
        if ($plain === false || ! str_starts_with($plain, $namePrefix($key))) {
            continue;
        }
        $inner = unserialize($redis->get($prefix.substr($plain, 41)));
        $attributes = $serialization === 'json' ? json_decode($inner, true) : unserialize($inner);
        echo json_encode($attributes);
        exit;
    }
    echo '(null)';
}
