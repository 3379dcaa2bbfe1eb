"""The Flask app of the `flask` workload: one small route, no I/O, so the
figures show the per-request cost of the instrumentation, not of the app.
Served by gunicorn (see WORKLOADS in bench/run.py)."""
from flask import Flask

app = Flask(__name__)


@app.get("/hello")
def hello():
    return "Hello, world!"
