"""A process-pool handler that cannot reach a worker: a nested function."""

from twistbridge import Bridge

bridge = Bridge()


def make_handler():
    def nested(n):
        return n

    return nested


bridge.rpc_function(make_handler(), name="nested", run_in="process")
