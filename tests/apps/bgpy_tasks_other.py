"""bgpy tasks from a module the servers under test do not allow."""


def init_task():
    return {"other": True}


def exec_task(client, state, exec_args):
    return state


def exit_task(client, state, exit_args):
    return None
