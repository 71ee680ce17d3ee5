from django import forms
from django.conf import settings

CLIENTS = [(c, c) for c in ("Client", "AnyServiceInvoker", "JSONClient")]


class RatesForm(forms.Form):
    currency = forms.MultipleChoiceField(choices=(), widget=forms.CheckboxSelectMultiple)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["currency"].choices = [(c, c) for c in settings.RATES_CURRENCIES]


class CustomerForm(forms.Form):
    cust_id = forms.CharField(max_length=32)
    client = forms.ChoiceField(choices=CLIENTS, initial="Client")
