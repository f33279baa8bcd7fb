"""Mail composition: what a mail says (:mod:`.messages`), the rendered
:class:`~flask_confirm.EmailMessage` (:mod:`.message`), and its SMTP bytes
(:mod:`.mime`).

The layer below :mod:`flask_confirm.senders`, which hands these mails to a
provider; nothing here imports the senders.
"""
