"""`python -m bot` runs the server, like `oi-bot`."""

import sys

from bot.server import main

sys.exit(main())
