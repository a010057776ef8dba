from shopsense.cli import main

main()
