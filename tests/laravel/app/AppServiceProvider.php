<?php

namespace App;

use Illuminate\Auth\GenericUser;
use Illuminate\Contracts\Auth\Authenticatable;
use Illuminate\Contracts\Auth\UserProvider;
use Illuminate\Support\ServiceProvider;

/** Users without a database: user N exists for every positive N. */
class Users implements UserProvider
{
    public function retrieveById($identifier)
    {
        return ctype_digit((string) $identifier) ? new GenericUser(['id' => (int) $identifier]) : null;
    }

    public function retrieveByToken($identifier, $token)
    {
        return null;
    }

    public function updateRememberToken(Authenticatable $user, $token)
    {
    }

    public function retrieveByCredentials(array $credentials)
    {
        return $this->retrieveById($credentials['id'] ?? null);
    }

    public function validateCredentials(Authenticatable $user, array $credentials)
    {
        return true;
    }
}

/** Registers the user provider and the routes, as a skeleton's Auth and Route providers would. */
class AppServiceProvider extends ServiceProvider
{
    public function boot()
    {
        $this->app['auth']->provider('users', fn () => new Users());
        $this->app['router']->middleware('web')->group(base_path('routes/web.php'));
    }
}
