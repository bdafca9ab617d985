"""bgpy tasks whose state JSON cannot carry (a set): refused with a broker."""


def init_task():
    return {"seen": {1, 2}}


def exec_task(client, state, exec_args):
    return state


def exit_task(client, state, exit_args):
    return None
