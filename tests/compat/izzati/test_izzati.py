from twistbridge.izzati import Backend
from izzati import Frontend
from izzati_wait import wait_until_served as sleep

def test_simple_return():
    def call(q, text, file):
        assert text == {'test': 'works'}
        return {'status': 'OK'}
    b = Backend(call, background=True)
    p, q = b.run()
    sleep(1)  # sleep-ok: the original's own test, kept as it was
    f = Frontend('http://localhost:5020/')
    assert {'status': 'OK'} == f.send({'test': 'works'})