"""The shop's shoppers in its Cognito user pool, on either target: create one, sign one in, and the
simulator's shoppers (created once, with the same code as `clickstream shopper create`)."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from botocore.exceptions import ClientError

from clickstream import aws
from clickstream.infra.deploy import DeployConfig
from clickstream.infra.templates import load_stacks, stack_name
from clickstream.settings import Settings


class CognitoError(RuntimeError):
    """A Cognito call failed; the message is one line for people."""


@dataclass(frozen=True)
class ShopPool:
    user_pool_id: str
    client_id: str


def shop_pool(settings: Settings) -> ShopPool:
    """The storefront's pool and app client: locally the recorded ids, on AWS the outputs of the frontend stack
    deployed under the target's stack prefix (CLICKSTREAM_STACK_PREFIX or the parameters file)."""
    if settings.target == "local":
        frontend = next(stack for stack in load_stacks(settings) if stack.stem == "frontend")
        if any(pool.logical_id not in frontend.physical_ids for pool in frontend.user_pools()):
            raise CognitoError("the local user pool does not exist yet: run `clickstream up` first")
        outputs = frontend.outputs()
        return ShopPool(outputs["UserPoolId"], outputs["UserPoolClientId"])
    cloudformation = aws.client("cloudformation", settings)
    try:
        name = stack_name("frontend", DeployConfig.load(settings).prefix)  # as `clickstream deploy` named it
        stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as error:
        raise CognitoError(f"cannot read the frontend stack's outputs: {error}") from error
    outputs = {out["OutputKey"]: out["OutputValue"] for out in stack.get("Outputs", [])}
    return ShopPool(outputs["UserPoolId"], outputs["UserPoolClientId"])


def create_shopper(settings: Settings, email: str, password: str) -> str:
    """A confirmed shopper with a verified email and a permanent password; returns its sub."""
    pool = shop_pool(settings)
    client = aws.client("cognito-idp", settings)
    try:
        user = client.admin_create_user(
            UserPoolId=pool.user_pool_id, Username=email, MessageAction="SUPPRESS",
            UserAttributes=[{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}])["User"]
        client.admin_set_user_password(UserPoolId=pool.user_pool_id, Username=email, Password=password,
                                       Permanent=True)
    except ClientError as error:
        code = error.response["Error"]["Code"]
        if code == "InvalidPasswordException":
            if "user" in locals():
                client.admin_delete_user(UserPoolId=pool.user_pool_id, Username=email)
            raise CognitoError(f"the password does not meet the pool's policy: {error.response['Error']['Message']}")
        if code == "UsernameExistsException":
            raise CognitoError(f"a shopper with the email {email} exists already") from None
        raise CognitoError(f"{code}: {error.response['Error']['Message']}") from None
    return _sub(user)


def _sub(user: dict) -> str:
    return next(attr["Value"] for attr in user.get("Attributes", user.get("UserAttributes", []))
                if attr["Name"] == "sub")


def shopper_sub(settings: Settings, email: str) -> str | None:
    """The sub of the shopper with this email, None when there is none."""
    pool = shop_pool(settings)
    try:
        return _sub(aws.client("cognito-idp", settings).admin_get_user(UserPoolId=pool.user_pool_id, Username=email))
    except ClientError as error:
        if error.response["Error"]["Code"] == "UserNotFoundException":
            return None
        raise CognitoError(f"{error.response['Error']['Code']}: {error.response['Error']['Message']}") from None


def random_password() -> str:
    """A password the pool's policy accepts (12+ characters, lower and upper case, a digit, a symbol), used once."""
    return secrets.token_urlsafe(18) + "aA1!"


def ensure_shoppers(settings: Settings, emails: Iterable[str]) -> dict[str, str]:
    """{email: sub} of these shoppers, each created (with a random password nobody keeps) when it does not
    exist yet: a second call changes nothing."""
    return {email: shopper_sub(settings, email) or create_shopper(settings, email, random_password())
            for email in emails}


def signed_in_shoppers(settings: Settings, emails: Iterable[str]) -> dict[str, str]:
    """{email: Cognito ID token} of these shoppers (created when missing), each signed in through the app
    client with a fresh random password set for this sign-in."""
    pool = shop_pool(settings)
    client = aws.client("cognito-idp", settings)
    tokens = {}
    for email in ensure_shoppers(settings, emails):
        password = random_password()
        client.admin_set_user_password(UserPoolId=pool.user_pool_id, Username=email, Password=password,
                                       Permanent=True)
        tokens[email] = sign_in(settings, email, password)["IdToken"]
    return tokens


def _initiate_auth(settings: Settings, flow: str, parameters: dict, refused: str) -> dict:
    """InitiateAuth on the shop's app client: the AuthenticationResult; a refusal is CognitoError(refused)."""
    pool = shop_pool(settings)
    client = aws.client("cognito-idp", settings)
    try:
        return client.initiate_auth(ClientId=pool.client_id, AuthFlow=flow,
                                    AuthParameters=parameters)["AuthenticationResult"]
    except ClientError as error:
        if error.response["Error"]["Code"] in ("NotAuthorizedException", "UserNotFoundException"):
            raise CognitoError(refused) from None
        raise CognitoError(f"{error.response['Error']['Code']}: {error.response['Error']['Message']}") from None


def sign_in(settings: Settings, email: str, password: str) -> dict:
    """USER_PASSWORD_AUTH: the AuthenticationResult (IdToken, RefreshToken, ...); a wrong email or password is
    one CognitoError that does not say which."""
    return _initiate_auth(settings, "USER_PASSWORD_AUTH", {"USERNAME": email, "PASSWORD": password},
                          "Incorrect email or password.")


def refresh_id_token(settings: Settings, refresh_token: str) -> str:
    """REFRESH_TOKEN_AUTH: a fresh ID token for the shopper whose refresh token this is."""
    return _initiate_auth(settings, "REFRESH_TOKEN_AUTH", {"REFRESH_TOKEN": refresh_token},
                          "The session expired: sign in again.")["IdToken"]
