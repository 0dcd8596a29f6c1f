from faas_cli.main import cli

cli()
