"""The bgpy README's tasks, as a file for `--init-file` (both servers load it)."""


def init_task(client=None):
    return {"request_count": 0, "value": 1000}


def exec_task(client, init_args, exec_args):
    init_args["request_count"] += 1
    if exec_args.get("command") == "increase":
        init_args["value"] += exec_args["value_change"]
    if exec_args.get("command") == "decrease":
        init_args["value"] -= exec_args["value_change"]
    return init_args


def exit_task(client, init_args, exit_args):
    return None
