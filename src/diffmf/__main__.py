from diffmf.cli.main import main

raise SystemExit(main())
