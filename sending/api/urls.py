from django.urls import path

from . import views

urlpatterns = [
    path("messages", views.MessagesView.as_view(), name="messages"),
    path("messages/batch", views.MessageBatchView.as_view(), name="messages-batch"),
    path("messages/<uuid:message_id>", views.MessageDetailView.as_view(), name="message-detail"),
]
