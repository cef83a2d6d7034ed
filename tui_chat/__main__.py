import sys

from tui_chat.cli import main

sys.exit(main())
