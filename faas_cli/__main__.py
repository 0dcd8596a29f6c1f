from faas_cli.main import cli

cli(prog_name="faas")
