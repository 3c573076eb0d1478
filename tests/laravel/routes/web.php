<?php
// What the test asks of Laravel's side of a shared session.
use Illuminate\Http\Request;

$router = app('router');

// A value put by Laravel (`?key=…&value=…`; a `json` value is decoded first).
$router->get('/put', function (Request $request) {
    $value = $request->has('json') ? json_decode($request->query('json'), true) : $request->query('value');
    $request->session()->put($request->query('key'), $value);
    return 'ok';
});

// The whole session as Laravel reads it.
$router->get('/show', fn (Request $request) => $request->session()->all());

// A flash message for the next request.
$router->get('/flash', function (Request $request) {
    $request->session()->flash('status', $request->query('value'));
    return 'ok';
});

// Laravel's own login and logout, through the `web` guard.
$router->get('/login', function (Request $request) {
    auth()->guard('web')->loginUsingId((int) $request->query('id'));
    return 'ok';
});
$router->get('/me', fn () => (string) (auth()->guard('web')->id() ?? 'guest'));

// A slow request under the session's lock (`block()`): a value put, then 0.7 s before the save.
$router->get('/slow', function (Request $request) {
    $request->session()->put('laravel', 'x');
    usleep(700000);
    return 'ok';
})->block(5, 5);
