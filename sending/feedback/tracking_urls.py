from django.urls import path

from sending.feedback import tracking_views

urlpatterns = [
    path("o/<str:token>", tracking_views.open_pixel, name="tracking-open"),
    path("c/<str:token>", tracking_views.click, name="tracking-click"),
    path("u/<str:token>", tracking_views.unsubscribe, name="tracking-unsubscribe"),
]
