<?php
// The skeleton's redis cache store and its 8.x prefix, `laravel_cache` (Laravel adds the `:`).
return [
    'default' => 'redis',
    'stores' => ['redis' => ['driver' => 'redis', 'connection' => 'cache']],
    'prefix' => 'laravel_cache',
];
