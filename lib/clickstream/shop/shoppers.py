"""The shop's shoppers in its Cognito user pool, on either target: create one, sign one in."""

from __future__ import annotations

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
    return next(attr["Value"] for attr in user["Attributes"] if attr["Name"] == "sub")


def sign_in(settings: Settings, email: str, password: str) -> dict:
    """InitiateAuth USER_PASSWORD_AUTH on the shop's app client: the AuthenticationResult (IdToken, ...);
    a wrong email or password is one CognitoError that does not say which."""
    pool = shop_pool(settings)
    client = aws.client("cognito-idp", settings)
    try:
        return client.initiate_auth(ClientId=pool.client_id, AuthFlow="USER_PASSWORD_AUTH",
                                    AuthParameters={"USERNAME": email, "PASSWORD": password})["AuthenticationResult"]
    except ClientError as error:
        if error.response["Error"]["Code"] in ("NotAuthorizedException", "UserNotFoundException"):
            raise CognitoError("Incorrect email or password.") from None
        raise CognitoError(f"{error.response['Error']['Code']}: {error.response['Error']['Message']}") from None
