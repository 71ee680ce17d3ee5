"""Demo services for the README tour."""

from broker import Int, Service


class Echo(Service):
    """Echo the text back, repeated ``repeat`` times."""

    name = "demo.echo"

    class SimpleIO:
        input_required = ("text",)
        input_optional = (Int("repeat", default=1),)
        output_required = ("text",)

    def handle(self):
        self.response.payload.text = self.request.input.text * self.request.input.repeat
