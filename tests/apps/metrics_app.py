"""An app for the metrics test: one handler per protocol, known answers."""

from twistbridge import Bridge, _demo_tasks
from twistbridge._demo_tasks import exec_task, exit_task, init_task

bridge = Bridge(max_upload_size="1K")


@bridge.izzati
def upload(text, data):
    """Count the fields and files."""
    return {"fields": len(text), "files": len(data)}


@bridge.igor_action("echo", run_in="reactor")
def echo(out, data, **kwargs):
    """Send C{data} back once."""
    out.send(data)


@bridge.rpc_function(run_in="reactor")
def add(a, b):
    """a + b."""
    return a + b


bridge.bgpy_tasks(init_task, exec_task, exit_task, allow_modules=[_demo_tasks.__name__])
