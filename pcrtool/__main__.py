from pcrtool.cli import main

main()
