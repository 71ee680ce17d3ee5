from django.urls import path

from rates import views

urlpatterns = [
    path("", views.rates, name="rates"),
    path("customer/", views.customer, name="customer"),
]
