<?php
// The skeleton's redis cache store and its 8.x prefix, `laravel_cache` (Laravel adds the `:`); its
// locks (a session's `block()` among them) on the `default` connection, as in the skeleton.
return [
    'default' => 'redis',
    'stores' => ['redis' => ['driver' => 'redis', 'connection' => 'cache', 'lock_connection' => 'default']],
    'prefix' => 'laravel_cache',
];
