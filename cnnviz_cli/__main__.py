from cnnviz_cli.cli import main

main()
