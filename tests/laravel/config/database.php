<?php
// The skeleton's Redis connections through phpredis, with its 8.x prefix `laravel_database_`.
return [
    'redis' => [
        'client' => 'phpredis',
        'options' => ['prefix' => 'laravel_database_'],
        'default' => ['host' => '127.0.0.1', 'port' => env('REDIS_PORT'), 'database' => 0],
        'cache' => ['host' => '127.0.0.1', 'port' => env('REDIS_PORT'), 'database' => 1],
    ],
];
