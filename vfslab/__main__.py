from vfslab.cli import main

raise SystemExit(main())
