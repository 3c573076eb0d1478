<?php
// A plain PHP app on PHP's own session module with phpredis (the save handler and its Redis are
// given by `-d` on the command line), served by `php -S` behind the same nginx as the demo:
//   /php/login?user=NAME   signs NAME in under a new session id, as PHP apps do
//   /php/me                who is signed in, or `nobody`
//   /php/get?key=KEY       a session value as JSON
session_start();
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
if ($path === '/php/login') {
    session_regenerate_id(true);
    $_SESSION['user'] = $_GET['user'];
    echo 'ok';
} elseif ($path === '/php/me') {
    echo $_SESSION['user'] ?? 'nobody';
} elseif ($path === '/php/get') {
    echo json_encode($_SESSION[$_GET['key']] ?? null);
} else {
    http_response_code(404);
}
