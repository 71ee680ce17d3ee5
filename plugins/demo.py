"""Demo services for the README tour."""

from broker import Int, Service
from broker.errors import ValidationError

#: The longest text the echo builds: a small request must not make a huge answer.
MAX_ECHO = 100_000


class Echo(Service):
    """Echo the text back, repeated ``repeat`` times (at most 100 000 characters in all)."""

    name = "demo.echo"

    class SimpleIO:
        input_required = ("text",)
        input_optional = (Int("repeat", default=1, min=0, max=1000),)
        output_required = ("text",)

    def handle(self):
        text, repeat = self.request.input.text, self.request.input.repeat
        if len(text) * repeat > MAX_ECHO:
            raise ValidationError.of([{"field": "repeat", "problem":
                                       f"the text repeated must be at most {MAX_ECHO} characters"}])
        self.response.payload.text = text * repeat
