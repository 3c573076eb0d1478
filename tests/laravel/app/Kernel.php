<?php

namespace App;

use Illuminate\Foundation\Http\Kernel as HttpKernel;

/** The skeleton's `web` group, cut to what carries the session: its cookie and its store. */
class Kernel extends HttpKernel
{
    protected $middlewareGroups = [
        'web' => [
            \Illuminate\Cookie\Middleware\EncryptCookies::class,
            \Illuminate\Cookie\Middleware\AddQueuedCookiesToResponse::class,
            \Illuminate\Session\Middleware\StartSession::class,
        ],
    ];
}
