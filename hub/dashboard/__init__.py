"""Administration dashboard (``/dashboard``): server-rendered pages over the admin services, with
sign-in, an encrypted session cookie and CSRF tokens (see :mod:`hub.dashboard.session`)."""
