from bench.commands.cli import main

raise SystemExit(main())
