<?php
// Laravel 8.83's own EncryptCookies middleware and Encrypter (Debian's php-laravel-framework) on a
// cookie of ours, or making one for us: src/store/format/laravel.rs drives it.
//   php laravel_cookie.php APP_KEY CIPHER decrypt NAME PAYLOAD   prints what Laravel reads
//   php laravel_cookie.php APP_KEY CIPHER encrypt NAME VALUE     prints the cookie Laravel sends
require_once 'Illuminate/Cookie/autoload.php';
require_once 'Illuminate/Http/autoload.php';
require_once 'Illuminate/Encryption/autoload.php';

use Illuminate\Cookie\Middleware\EncryptCookies;
use Illuminate\Encryption\Encrypter;
use Illuminate\Http\Request;
use Illuminate\Http\Response;
use Symfony\Component\HttpFoundation\Cookie;

[, $appKey, $cipher, $mode, $name, $value] = $argv;
$key = str_starts_with($appKey, 'base64:') ? base64_decode(substr($appKey, 7)) : $appKey;
$middleware = new EncryptCookies(new Encrypter($key, $cipher));

if ($mode === 'decrypt') {
    $request = Request::create('/', 'GET', [], [$name => $value]);
    $middleware->handle($request, function ($request) use ($name) {
        echo $request->cookies->get($name) ?? '(null)';
        return new Response();
    });
} else {
    $response = $middleware->handle(Request::create('/'), function () use ($name, $value) {
        return (new Response())->withCookie(new Cookie($name, $value));
    });
    echo $response->headers->getCookies()[0]->getValue();
}
