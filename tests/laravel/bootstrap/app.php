<?php
// The application, as a Laravel skeleton's bootstrap/app.php, with the classes a composer autoloader
// would find required by hand. The caches Laravel writes go where APP_*_CACHE (set by the test) says.
require_once __DIR__.'/../app/Kernel.php';
require_once __DIR__.'/../app/AppServiceProvider.php';

$app = new Illuminate\Foundation\Application(dirname(__DIR__));
$app->singleton(Illuminate\Contracts\Http\Kernel::class, App\Kernel::class);
$app->singleton(
    Illuminate\Contracts\Debug\ExceptionHandler::class,
    Illuminate\Foundation\Exceptions\Handler::class
);

return $app;
