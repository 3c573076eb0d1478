<?php
// Cross-checks src/store/format/php.rs against PHP itself. Each input line is a JSON value, a tab,
// and the hex of what our codec serialises it to. Each output line is "1" or "0" (whether PHP's
// unserialize of our bytes is identical to json_decode of the JSON), a tab, and the hex of PHP's
// own serialize of that value, for our parser to read.
while (($line = fgets(STDIN)) !== false) {
    [$json, $ours] = explode("\t", rtrim($line, "\n"));
    $value = json_decode($json, true, 512, JSON_THROW_ON_ERROR);
    $same = unserialize(hex2bin($ours)) === $value ? "1" : "0";
    echo $same, "\t", bin2hex(serialize($value)), "\n";
}
