<?php
// Laravel 8's skeleton settings, cut to the providers a session with a login needs.
return [
    'name' => 'Laravel',
    'env' => 'testing',
    'debug' => false,
    'timezone' => 'UTC',
    'key' => env('APP_KEY'),
    'cipher' => env('APP_CIPHER', 'AES-256-CBC'),
    'providers' => [
        Illuminate\Auth\AuthServiceProvider::class,
        Illuminate\Cache\CacheServiceProvider::class,
        Illuminate\Cookie\CookieServiceProvider::class,
        Illuminate\Encryption\EncryptionServiceProvider::class,
        Illuminate\Filesystem\FilesystemServiceProvider::class,
        Illuminate\Redis\RedisServiceProvider::class,
        Illuminate\Session\SessionServiceProvider::class,
        App\AppServiceProvider::class,
    ],
];
