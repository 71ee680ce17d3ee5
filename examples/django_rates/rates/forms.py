from django import forms

CURRENCIES = [(c, c) for c in ("USD", "GBP", "JPY", "CHF", "PLN", "HRK", "SEK", "CAD")]
CLIENTS = [(c, c) for c in ("Client", "AnyServiceInvoker", "JSONClient")]


class RatesForm(forms.Form):
    currency = forms.MultipleChoiceField(choices=CURRENCIES, widget=forms.CheckboxSelectMultiple)


class CustomerForm(forms.Form):
    cust_id = forms.CharField(max_length=32)
    client = forms.ChoiceField(choices=CLIENTS, initial="Client")
