from notifsvc.cli import main

raise SystemExit(main())
