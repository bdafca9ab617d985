"""
For tests/test_workers.py: broker_app's C{whoami} and C{announce} with its
relay process, and bgpy_app's tasks, in one bridge.
"""

import bgpy_tasks
import broker_app

from twistbridge import Bridge

bridge = Bridge()
bridge.igor_actions({"whoami": broker_app.whoami, "announce": broker_app.announce})
bridge.igor_process("relay", broker_app.relay)
bridge.bgpy_tasks(
    bgpy_tasks.init_task,
    bgpy_tasks.exec_task,
    bgpy_tasks.exit_task,
    allow_modules=["bgpy_tasks"],
)
