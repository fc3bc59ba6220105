from diffmf.cli.main import entry

entry()
