<?php
// What goes wrong shows in the test's output.
return [
    'default' => 'stderr',
    'channels' => ['stderr' => ['driver' => 'single', 'path' => 'php://stderr']],
];
