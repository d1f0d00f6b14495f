from chargebrain.cli import main

raise SystemExit(main())
