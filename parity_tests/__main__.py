from parity_tests.report import main

raise SystemExit(main())
