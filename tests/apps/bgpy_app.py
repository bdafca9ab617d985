"""A bridge app serving the bgpy test tasks (allowed for clients' INIT too)."""

import bgpy_tasks

from twistbridge import Bridge

bridge = Bridge()
bridge.bgpy_tasks(
    bgpy_tasks.init_task,
    bgpy_tasks.exec_task,
    bgpy_tasks.exit_task,
    allow_modules=["bgpy_tasks"],
)
