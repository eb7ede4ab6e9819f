import pkcs11.exceptions as p11e
from pkcs11 import Attribute
from kms.keystore import hierarchy
from kms.hsm import KeyUse, TokenKey

def test_explore(kms):
    hsm = kms.hsm
    print(hsm.mechanisms())
    for k in (kms.root.storage, kms.root.binding, kms.root.audit, TokenKey("vendor-aes128"), TokenKey("vendor-aes256")):
        print(k, hsm.attributes(k))
        try:
            hsm.read_value(k)
        except Exception as e:
            print("read", type(e).__mro__, e)
    for use in (KeyUse.KEK, KeyUse.EK, KeyUse.AK):
        s = hsm.generate_key(use, 16)
        print(use, hsm.attributes(s))
        try:
            print(hsm.read_value(s))
        except Exception as e:
            print("read", type(e), e)
        print(hsm.check_value(s))
    print(hsm.check_value(TokenKey("vendor-aes128")))
    print(hsm._session, type(hsm._session))
