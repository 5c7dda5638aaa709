from rinha.cli.main import app

app(prog_name="rinha")
