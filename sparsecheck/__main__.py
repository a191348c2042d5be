from sparsecheck.cli import main

main()
