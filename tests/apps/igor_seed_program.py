"""The Igor README's program, with only its imports changed to twistbridge.igor."""

import os
import sys
import time
from threading import Thread

from twistbridge.igor import IgorServer, flatten


def hello(out, data, **kwargs):
    name = data["name"]
    out.send("Hello " + name)


def create_event(out, data, **kwargs):
    out.send({"created": data})


def shutdown_igor(out, data, **kwargs):
    sys.exit()  # shutdown igor and whole Python program


API = {
    "hello": hello,
    "events": {"create": create_event},
    "shutdown": shutdown_igor,
}


class BacgroundProcess(Thread):
    def __init__(self):
        Thread.__init__(self)
        self.process_id = None  # will be populated by server
        self.output = None  # will be populated by server
        self.counter = 0

    def run(self):
        print("BacgroundProcess run")
        while True:
            time.sleep(0.2)  # sleep-ok: the README's process ticks on its own
            self.counter = self.counter + 1
            self.output.send(action="counter_increment", data={"counter": self.counter})


CONFIG = {"port": int(os.environ.get("IGOR_PORT", "5678"))}
igor = IgorServer(api=flatten(API), config=CONFIG)
igor.add_process("counter_process", BacgroundProcess())
igor.run_forever()
