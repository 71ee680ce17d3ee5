from django.http import JsonResponse
from django.urls import path


def whoami(request):
    return JsonResponse({"remote_user": request.META.get("REMOTE_USER"),
                         "script_name": request.META.get("SCRIPT_NAME"),
                         "path": request.path, "path_info": request.path_info})


urlpatterns = [path("whoami", whoami)]
