"""Demo services for the README tour."""

from broker import Int, Service, Text


class Echo(Service):
    """Echo the text back, repeated ``repeat`` times.

    Both are bounded (at most 100 characters, 1000 times), so a small request cannot make a
    huge answer, and ``/openapi.json`` says so.
    """

    name = "demo.echo"

    class SimpleIO:
        input_required = (Text("text", max_length=100),)
        input_optional = (Int("repeat", default=1, min=0, max=1000),)
        output_required = ("text",)

    def handle(self):
        self.response.payload.text = self.request.input.text * self.request.input.repeat
