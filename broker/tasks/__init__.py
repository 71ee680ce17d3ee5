"""Long-running work: invocations answered with a task id, polled or pushed.

Services call ``self.invoke_async(name, data)`` (or the dispatchers with
``"async": true`` / Zato's ``is_async``); the task's status is read at
``GET /broker/tasks/{task_id}`` (:mod:`broker.http.tasks`) and its final record
is published to ``broker.tasks.<id>``.  ``self.patterns`` (fan-out, parallel,
invoke-retry) stand on tasks.  See ``docs/tasks.md``.
"""

from broker.tasks.config import FEATURE, TASKS_SECTION, build_tasks
from broker.tasks.runner import TASK_TOPIC_PREFIX, Tasks, owner_of, task_topic
from broker.tasks.store import ITaskStore, MemoryTaskStore, RedisTaskStore

__all__ = ["FEATURE", "ITaskStore", "MemoryTaskStore", "RedisTaskStore", "TASKS_SECTION",
           "TASK_TOPIC_PREFIX", "Tasks", "build_tasks", "owner_of", "task_topic"]
