"""Built-in services to watch and steer the scheduler while the node runs.

``broker.scheduler.list-jobs`` answers ``{"jobs": [...]}`` (schedule, next
and last run, counters); ``broker.scheduler.set-enabled`` takes ``name``
and ``is_enabled``.  Reach them through a guarded channel such as
``/broker/invoke`` (admin security) or one of your own.
"""

from broker.errors import NotFound
from broker.services.base import Service
from broker.simpleio import Bool, Text

__all__ = ["scheduler_services"]


def scheduler_services(scheduler):
    """The service classes bound to ``scheduler``."""

    class ListJobs(Service):
        """Every configured job with its schedule, state and counters."""

        name = "broker.scheduler.list-jobs"

        def handle(self):
            self.response.payload = {"jobs": scheduler.describe()}

    class SetEnabled(Service):
        """Enable or disable a job now (on every node sharing the job state)."""

        name = "broker.scheduler.set-enabled"

        class SimpleIO:
            input_required = (Text("name"), Bool("is_enabled"))

        async def handle(self):
            name = self.request.input.name
            if name not in scheduler.jobs:
                raise NotFound(f"No such job: {name}")
            job = await scheduler.set_enabled(name, self.request.input.is_enabled)
            self.response.payload = job.describe(scheduler.lock.held())

    return ListJobs, SetEnabled
